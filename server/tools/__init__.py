"""The server's tools: one thin function per tool (input model → trust gate → engine → present).

Each module here lists its tools in `SPECS`; `server.app.all_specs` names every module and
registers the tools whose engine module exists. Presentation (output models within a budget,
progress) is `_present`; engine errors become tool errors in `_errors`.
"""
