"""The tutorial's experiments: `python -m experiments.<name>`; `python -m experiments` runs all five."""
