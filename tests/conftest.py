"""Test-wide settings.

Hypothesis explores new examples on every run by default, which is what a developer wants
locally. CI sets ``HYPOTHESIS_PROFILE=ci`` (``.ci/run``): the same examples every run
(``derandomize``), so a red CI always means a change broke something; open-ended exploration
is ``stress/fuzz_campaign``'s job.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
