"""``minicnn serve``: a web page to draw or upload a digit and watch the network read it.

    reading.py        one image -> the digit read, the ten probabilities, the 28x28 input, the feature maps
    server.py         the Flask application: the page, /predict, and the checks every request passes first
    hosts.py          who may use it: the Host names it answers to, the page's own Origin
    form.py           the form a request sends: a message of its own for each way it can be wrong
    explain_api.py    its questions to minicnn.explain: one cell of a feature map, and why this digit
    listening.py      the local server that ``minicnn serve`` starts: its time limits and its connection cap
    templates/        the page itself: a canvas to draw on, the bar chart, the pictures (HTML, CSS, JavaScript)

``reading`` and ``hosts`` need only minicnn's own dependencies; ``server``, ``form`` and ``listening`` need Flask,
the ``web`` extra (``pip install -e ".[web]"``). The command itself, its
options and its messages, is minicnn/commands/serve.py.

Docs: docs/serve.md
"""
