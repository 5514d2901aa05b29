"""The command line: ``mvemo`` and ``mvemo-cv``, thin layers over library functions.

Exit codes: 0 all done; 2 usage, configuration or input error (one line on
stderr, no traceback); 3 finished but some clips failed, each listed.
Heavy modules are imported inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import click

from mvemo.pipeline.cli.bench import bench
from mvemo.pipeline.cli.cache import cache_group
from mvemo.pipeline.cli.cv import cv, fuse
from mvemo.pipeline.cli.demo import demo
from mvemo.pipeline.cli.extract import extract
from mvemo.pipeline.cli.manifest import manifest_group
from mvemo.pipeline.cli.models import models_group
from mvemo.pipeline.cli.predict import predict
from mvemo.pipeline.cli.serve import serve
from mvemo.pipeline.cli.study import study_group
from mvemo.pipeline.cli.tools import CONTEXT, MvemoGroup
from mvemo.pipeline.cli.weights import weights_group


@click.group(cls=MvemoGroup, context_settings=CONTEXT)
@click.version_option(package_name="mvemo", prog_name="mvemo")
def cli() -> None:
    """mvemo: the emotion of music videos from their sound and pictures.

    Stage one (`mvemo extract`) decodes clips, computes features and embeddings
    into an HDF5 cache; stage two (`mvemo-cv`, `mvemo fuse`) trains late-fusion
    heads over that cache with k-fold cross-validation.
    """


cli.add_command(manifest_group)
cli.add_command(cv)
cli.add_command(demo)
cli.add_command(predict)
cli.add_command(serve)
cli.add_command(fuse)
cli.add_command(cache_group)
cli.add_command(bench)
cli.add_command(extract)
cli.add_command(weights_group)
cli.add_command(study_group)
cli.add_command(models_group)
