"""Drive the reference state-signals library (run by its own Python: redis<4).

    python signals_ref.py exporter PORT PROCESS SUBS EVENTS_JSON
    python signals_ref.py responder PORT NAME ANSWERS_JSON

Prints one JSON object per line, flushed, for the test to read.
"""

from __future__ import annotations

import json
import sys

import state_signals


def _say(**fields):
    print(json.dumps(fields), flush=True)


def exporter(port, process, subs, events):
    exp = state_signals.SignalExporter(process, redis_port=int(port), log_level="ERROR")
    legal = [event for event, _ in events]
    code = exp.initialize_and_wait(int(subs), legal, timeout=20)
    _say(init=code, subs=sorted(exp.subs), pub_id=exp.pub_id)
    for i, (event, timeout) in enumerate(events, 1):
        code, msgs = exp.publish_signal(
            event, sample=i, tag="run-1", metadata={"i": i}, timeout=timeout
        )
        _say(event=event, code=int(code), msgs=msgs)
    exp.shutdown()
    _say(done=True)


def responder(port, name, answers):
    resp = state_signals.SignalResponder(
        redis_port=int(port), responder_name=name, log_level="ERROR"
    )
    _say(ready=resp.responder_id)
    for signal in resp.listen():
        _say(event=signal.event, sample_no=signal.sample_no, metadata=signal.metadata)
        if signal.event == "initialization":
            resp.srespond(signal)
        elif signal.event == "shutdown":
            continue
        else:
            answer = answers.get(signal.event, [1, None])
            if answer != "silent":
                resp.srespond(signal, answer[0], answer[1])


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "exporter":
        exporter(args[0], args[1], args[2], json.loads(args[3]))
    else:
        responder(args[0], args[1], json.loads(args[2]))
