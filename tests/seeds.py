"""Seeds of the generated tests: new for every run unless given, and printed in the run's header so that a
failure can be replayed (`STAGEFLOW_SCHEMATHESIS_SEED=<seed> make test`)."""

from __future__ import annotations

import os
import random

SCHEMATHESIS_SEED = int(os.environ.get("STAGEFLOW_SCHEMATHESIS_SEED") or random.SystemRandom().randrange(2**31))
# The processes `make test` starts for the suite inherit the seed of the one that starts them: one seed per run.
os.environ["STAGEFLOW_SCHEMATHESIS_SEED"] = str(SCHEMATHESIS_SEED)
