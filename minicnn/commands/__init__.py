"""The ``minicnn`` commands, one module each; :mod:`minicnn.cli` puts them on the command line.

    train.py       minicnn train      the documented MNIST training (minicnn/recipes.py)
    evaluate.py    minicnn evaluate   test accuracy, classification report, plots of saved weights
    predict.py     minicnn predict    the digit in each photo or scan, with its probability
    serve.py       minicnn serve      the web page to draw or upload a digit (minicnn/web/)
    summary.py     minicnn summary    layers, output shapes, parameter counts
    trace.py       minicnn trace      every module and kernel call of a training step and an inference batch
    bench.py       minicnn bench      the backend benchmarks (minicnn/bench.py, minicnn/bench_report.py)
    tune.py        minicnn tune       the hyperparameter search (minicnn/tune.py)
    baselines.py   minicnn baselines  kNN, RBF SVM, random forest (minicnn/baselines.py)
    compare.py     minicnn compare    CNNs and baselines in one table and one plot (minicnn/compare.py)
    exercise.py    minicnn exercise   write each layer's math yourself: start, check, hint, train (minicnn/exercises/)
    common.py      what several of them share: one-line errors and warnings, the network of a weights file

Each module has ``HELP`` (its line in ``minicnn --help``), ``add_arguments(p)`` (its options) and
``run(args, parser)`` (the command; a problem in the options is ``parser.error``).  The commands sit
on top of the library: they import it, and nothing in it imports them.
"""
