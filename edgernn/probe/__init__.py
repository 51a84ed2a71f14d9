"""The measuring probe: self-contained (stdlib + numpy + one runtime), so the same code runs on
this host and is shipped to devices. Nothing in this package imports the rest of edgernn,
except the host-only ``torch`` runtime."""
