"""Energy model: coefficients with sources, energy from toggles, accesses and exit depth."""
