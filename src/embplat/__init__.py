"""embplat: folders of labelled images → a searchable embedding space."""

__version__ = "0.1.0"
