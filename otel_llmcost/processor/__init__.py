"""The rollup processor: spans in (OTLP), conversations, agent traces and customers out.

`otlp` turns OTLP spans into `SpanRecord`s (`records`); `engine` rolls them up with no I/O and no
clock of its own; the service modules are the I/O shell around it.
"""
