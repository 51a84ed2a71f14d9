"""Device-lab scale: sweeps of many models x variants x devices on Ray (optional extra ``lab``)."""
