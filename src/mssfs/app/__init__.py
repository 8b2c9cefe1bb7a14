"""Interactive front ends: :mod:`mssfs.app.demo`, the local web page of ``mssfs demo``
(Gradio, the optional extra ``mssfs[demo]``, imported only when the demo starts)."""
