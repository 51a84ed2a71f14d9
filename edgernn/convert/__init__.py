"""Converting: export to every format (formats/), quantize (quantize/), the manifest."""
