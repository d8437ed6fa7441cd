"""nsl-ser: small, fast speech-emotion recognition for phones, MCUs, Edge TPU."""
from setuptools import find_packages, setup

setup(
    name="nsl-ser",
    version="0.1.0",
    description=("Speech emotion recognition with Neural Structured Learning, "
                 "self-distillation and early exits, exported to TFLite."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["nsl_ser", "nsl_ser.*"]),
    package_data={"nsl_ser": ["splits/*.json", "c/*.c", "c/*.h"]},
    # the default phone model, so that `pip install nsl-ser` predicts right
    # away (found in <prefix>/share/nsl-ser/; runtime.predictor.DEFAULT_MODEL)
    data_files=[("share/nsl-ser/tflite_models/default",
                 [f"tflite_models/default/{f}" for f in (
                     "model_int8.tflite", "model.json", "labels.txt",
                     "README.md", "LICENCE.md")])],
    # the runtime: predict, calibrate (LiteRT and numpy, no TensorFlow)
    install_requires=[
        "ai-edge-litert==2.3.0",
        "numpy",
        "soundfile",
        "soxr",
        "absl-py==1.4.0",
    ],
    extras_require={
        # training and export (every other nsl-ser command)
        "train": [
            "tensorflow==2.21.0",
            "tf-keras==2.21.0",
            "neural-structured-learning==1.4.0",
            "tensorflow-model-optimization==0.8.1",
            "tflite-micro==0.dev20261023182759",
            "librosa==0.11.0",
            "tensorboard",
            "tqdm",
            "matplotlib",
            "scikit-learn",
        ],
        "dev": ["pytest", "pytest-timeout"],
    },
    entry_points={"console_scripts": ["nsl-ser=nsl_ser.cli:main"]},
)
