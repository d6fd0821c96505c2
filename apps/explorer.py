"""The hstlab explorer: ``panel serve apps/explorer.py --address 127.0.0.1`` (or ``hstlab explore``).

Each browser session runs this script, so each gets its own state and training run.
"""

from hstlab.runtime import use_passive_threads

use_passive_threads()  # before torch starts its OpenMP threads (see BENCHMARKS.md)

import panel as pn  # noqa: E402

from hstlab.ui import create_app  # noqa: E402
from hstlab.ui.app import enable_threads  # noqa: E402

pn.extension()
enable_threads()  # rebuilds run off the event loop: one session's work never blocks another

if __name__ == "__main__":  # python apps/explorer.py: serve on localhost
    from hstlab.ui import serve

    serve(port=5006)
else:
    create_app().servable(title="hstlab explorer")
