"""The hstlab explorer: ``panel serve apps/explorer.py --address 127.0.0.1`` (or ``hstlab explore``).

Each browser session runs this script, so each gets its own state and training run.
"""

from hstlab.runtime import use_passive_threads

use_passive_threads()  # before torch starts its OpenMP threads (see BENCHMARKS.md)


from hstlab.ui import create_app  # noqa: E402
from hstlab.ui.app import TITLE, enable_threads  # noqa: E402
from hstlab.ui.offline import configure  # noqa: E402

configure()  # every resource from this server (see hstlab.ui.offline)
enable_threads()  # rebuilds run off the event loop: one session's work never blocks another

if __name__ == "__main__":  # python apps/explorer.py: serve on localhost
    from hstlab.ui import serve

    serve(port=5006)
else:
    create_app().template().servable(title=TITLE)
