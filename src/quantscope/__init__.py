"""quantscope: measure where a market-data feature service spends its time and how fast it recovers."""

__version__ = "0.1.0"
