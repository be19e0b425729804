"""Install with `pip install -e .` (add `[test]` for the test suite)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.startswith(("#", "-r"))]


setup(
    name="maskbit",
    version="0.1.0",
    description="Faithful, fast PyTorch reproduction of MaskBit (bit-token image generation) and VQGAN+.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["modeling*", "training*", "evaluation*", "data*", "utils*"]),
    install_requires=read_requirements("requirements.txt"),
    extras_require={"test": read_requirements("requirements-test.txt")},
    license="Apache-2.0",
)
