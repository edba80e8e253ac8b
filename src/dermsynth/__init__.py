"""dermsynth: do synthetic skin-disease images help classifiers on rarely seen skin tones?"""

__version__ = "0.1.0"
