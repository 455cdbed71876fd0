"""The DeiT course's helpers: the tested, reusable version of what each notebook builds."""
from helpers.constants import CLASSES
from helpers.data import DataError, load_cifar10
from helpers.profiles import Profile, get_profile, profile_name

__all__ = ["Profile", "get_profile", "profile_name", "CLASSES", "DataError", "load_cifar10",
           "notebook_setup"]


def notebook_setup(seed: int = 0) -> Profile:
    """Call once at the top of a notebook: prints the profile, seeds, PNG figures, and checks
    every figure's readability after each cell (helpers.figure_check)."""
    import random

    import torch
    from helpers.precision import describe_precision
    from helpers.profiles import describe
    from helpers.train import pick_device

    profile = get_profile()
    print(describe(profile))
    print(describe_precision(pick_device()))
    random.seed(seed)
    torch.manual_seed(seed)
    try:  # PNG figures: SVG bloats notebooks and diffs
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        set_matplotlib_formats("png")
    except ImportError:
        pass
    from helpers.figure_check import install_in_ipython
    install_in_ipython()
    return profile
