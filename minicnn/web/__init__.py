"""``minicnn serve``: a web page to draw or upload a digit and watch the network read it.

    reading.py        one image -> the digit read, the ten probabilities, the 28x28 input, the feature maps
    server.py         the Flask application and the local server that ``minicnn serve`` starts
    explain_api.py    its questions to minicnn.explain: one cell of a feature map, and why this digit
    templates/        the page itself: a canvas to draw on, the bar chart, the pictures (HTML, CSS, JavaScript)

``reading`` needs only minicnn's own dependencies; ``server`` needs Flask,
the ``web`` extra (``pip install -e ".[web]"``). The command itself, its
options and its messages, is minicnn/commands/serve.py.

Docs: docs/serve.md
"""
