"""nasflow: neural architecture search with an FGP-pretrained plug-in predictor.

The repository keeps one top-level folder per concern (spaces/, predictors/, ...);
``package_dir`` installs them under the ``nasflow`` namespace so nothing generic
like ``spaces`` or ``cli`` lands in site-packages.
"""
from setuptools import setup

ROOMS = {
    "nasflow": "nasflow",
    "nasflow.spaces": "spaces",
    "nasflow.predictors": "predictors",
    "nasflow.searchers": "searchers",
    "nasflow.cli": "cli",
    "nasflow.experiments": "nasflow/experiments",
}

setup(
    name="nasflow",
    version="0.1.0",
    description="Neural architecture search with an FGP-pretrained plug-in performance predictor",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=list(ROOMS),
    package_dir=ROOMS,
    install_requires=[
        # DGL's last wheels (2.1.0) ship graphbolt only for torch 2.0-2.2.1: a newer
        # torch makes `import dgl` fail, so the whole stack is pinned together.
        "torch==2.2.1",
        "dgl==2.1.0",
        "torchdata==0.7.1",
        "numpy<2",
        # imported by dgl at import time
        "pandas",
        "pydantic",
        "pyyaml",
        "nas-bench-201",
        "nasbench-pytorch",
        "optuna",
        "networkx",
        "click",
        # the run directory lock (flock on Unix; the kernel drops it when the holder dies)
        "filelock",
        "tqdm",
        # nasflow's checkpoints and caches: tensors without pickle (torch.load can run code)
        "safetensors",
        "scikit-learn",
        "matplotlib",
        # decodes image-folder datasets (matplotlib pulls it in too; nasflow imports it itself)
        "pillow",
    ],
    extras_require={
        "test": ["pytest", "hypothesis", "protobuf"],
        # web UI on a shared search study: optuna-dashboard sqlite:///study.db
        "dashboard": ["optuna-dashboard"],
        # driver for --storage postgresql://... across machines (SQLAlchemy 2.1 defaults to psycopg 3)
        "postgres": ["psycopg[binary]"],
    },
    entry_points={"console_scripts": ["nasflow=nasflow.cli.main:main"]},
)
