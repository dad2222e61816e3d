"""Building the packages (nfpm and native routes), the source packages, rebuild, parity, lint."""
