"""``lavt serve``: an HTTP API with dynamic batching and a page to try the model.

::

    lavt serve --port 8000          # then open http://127.0.0.1:8000/

- ``POST /v1/segment``: multipart (``image`` file, ``text`` fields) or JSON
  (``{"image": base64, "texts": [...]}``) -> COCO RLE masks, boxes, scores;
- ``GET /healthz``, ``GET /v1/model``, ``GET /metrics`` (Prometheus).

Modules: :mod:`~lavt.serve.adapter` (the only code touching the model),
:mod:`~lavt.serve.batcher` (dynamic batching in one worker thread),
:mod:`~lavt.serve.model_process` (the forwards in a child process, the CLI's default on a CPU),
:mod:`~lavt.serve.limits` (body limit while streaming),
:mod:`~lavt.serve.inputs` (request parsing), :mod:`~lavt.serve.multipart` (form bodies),
:func:`lavt.predict.encode.encode_prediction` (RLE),
:mod:`~lavt.serve.app` (routes). FastAPI and uvicorn come with the ``serve`` extra.
"""
