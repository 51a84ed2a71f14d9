"""The user's metric (``--metric-fn``) and the built-in metric functions: host only, used by
``measure`` (bench rows) and ``convert`` (the int8-mixed search), below both."""
