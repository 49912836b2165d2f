from __future__ import annotations

# Every server here runs the tiny exported model on one CPU thread: the suite is about the HTTP edge.
BASE_ENV = {"DISTILSERVE_PROVIDERS": "cpu", "DISTILSERVE_INTRA_OP_THREADS": "1"}
