"""Distribution of recs: the library, its Beam transforms, TFX wiring and serving."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent

# Direct requirements with the ranges the TFX 1.16 stack supports; the exact, tested set is
# requirements/lock.txt (install with it as constraints).
INSTALL_REQUIRES = [
    "tensorflow==2.16.2",
    "tf-keras~=2.16.0",
    "tensorflow-recommenders==0.7.3",
    "tensorflow-transform==1.16.0",
    "tfx-bsl==1.16.1",
    "apache-beam[gcp]>=2.70,<2.80",
    "dill==0.3.1.1",
    "scann==1.3.2",
    "numpy>=1.26,<2",
    "protobuf>=3.20,<4",
    "matplotlib>=3.7",
    "statsmodels>=0.14",
    # A/B test retention as survival (Kaplan-Meier, log-rank); 0.29 needs pandas >= 2.1.
    "lifelines>=0.27,<0.29",
    # The item-to-item fit's sparse matrices, LAPACK inverse and randomized SVD.
    "scipy>=1.10",
    "scikit-learn>=1.3",
    # `recs import`: CSV, Parquet and JSON-lines tables.
    "pandas>=1.5",
    "pyarrow>=10",
]
EXTRAS = {
    "pipeline": [
        "tfx[kfp]==1.16.0",
        "tensorflow-data-validation==1.16.1",
        "tensorflow-model-analysis~=0.47.0",
        "ml-metadata==1.16.0",
        "kfp>=2.0,<3",
    ],
    "serving": ["tensorflow-serving-api==2.16.1", "grpcio>=1.60", "redis>=5", "fastapi>=0.110",
                "uvicorn>=0.29", "httptools>=0.6", "uvloop>=0.19",
                "orjson>=3.9", "prometheus-client>=0.20", "pyyaml>=6", "urllib3>=1.26"],
    "monitoring": ["tensorflow-data-validation==1.16.1", "scikit-learn>=1.3"],
    # The ranker's tree ensemble (RankerConfig.trees) and a model server that loads it.
    "trees": ["tensorflow-decision-forests==1.9.2", "scikit-learn>=1.3"],
    "test": ["pytest>=8", "pytest-timeout>=2", "schemathesis>=4", "hypothesis>=6"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="recs",
    version="0.1.0",
    description="Two-tower retrieval and deep ranking on TensorFlow, TFX and TF Serving.",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["recs", "recs.*", "transforms", "transforms.*",
                                    "tfx_pipeline", "tfx_pipeline.*", "serving", "serving.*",
                                    "monitoring", "monitoring.*", "recs_cli", "recs_cli.*"]),
    package_data={"serving": ["openapi.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["recs=recs_cli.main:main"]},
)
