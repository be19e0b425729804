"""scripts/eval_maskbit.py (under `accelerate launch`) with the tests' tiny Inception stand-in, so a
multi-process gFID run is quick: same arguments as the script."""
import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [TESTS, os.path.join(os.path.dirname(TESTS), "scripts")]

import eval_maskbit  # noqa: E402
from eval_stand_ins import TinyFeatureNet  # noqa: E402

eval_maskbit.inception_from_config = lambda config, device: TinyFeatureNet().to(device)
eval_maskbit.main(sys.argv[1:])
