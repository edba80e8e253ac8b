"""Skin colour (ITA, Lab), the embedded dataset's lesion renderers and contact sheets: pixels, no study logic."""
