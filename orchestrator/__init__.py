"""rethink-audio: Ray sweeps reproducing 'Rethinking CNN Models for Audio Classification'.

Stages (each writes files the next reads): datasets -> preprocess (Ray Data, Parquet) -> trial (Ray Train)
-> sweep (Ray Tune) -> analysis. Modules that need Ray import it themselves; this package does not.
"""

__version__ = "0.1.0"
