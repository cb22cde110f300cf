"""The scenario loader: TOML to validated specs (:mod:`sandbox._core.specs`).

:mod:`.reader` walks a document key by key and words the errors;
:mod:`.generators` expands a stochastic document's generators (a pure step,
document to document); :mod:`.parse` builds the specs of an ordinary
document; :mod:`.load` is the pipeline from a file, a bundled name or a
document. The public names are re-exported by :mod:`sandbox`.
"""
