"""The artifact contract: what travels with every exported artifact, in one torch-free home.

- ``vocabulary``: formats (suffix, artifact tag, precisions), precisions, layouts, output kinds, bench targets.
- ``sidecar``: the sidecar ``{stem}.json`` as a typed ``Sidecar`` with one validator (``read``, ``validate``,
  ``write``).
- ``examples``: the bundled examples ``{stem}.examples.json`` (codec, validator, parity policy, agreement).
- ``schema``: the JSON Schema files in ``schemas/`` (package data) and how a violation becomes one error line.
- ``pt2``: the allow-list a ``.pt2`` archive must pass before ``torch.export.load`` sees it (nothing executable).
- ``text``: class names (no control characters) and printable device text.
- ``jsonio``: bounded JSON reading (size, nesting, no NaN/Infinity), regular files only, atomic writes.
- ``conformance/``: good and bad files with the error each must give, read by the Python, Kotlin, Swift and
  JavaScript tests alike (a reader that disagrees with a case is a bug in that reader).

Imports only the standard library, NumPy (the examples codec) and jsonschema: ``emo.runtime_bench`` depends on this
package alone, so the bench runs on a machine that has a runtime and no torch.
"""
