"""Entry point: the ``urbanvis`` click group, logging, and one-line errors with exit code 2."""

from __future__ import annotations

import logging
import sys
import traceback

import click

from urbanvis import __version__
from urbanvis._errors import UrbanvisError, one_line, word_params
from urbanvis._secrets import redact

from ._options import flag_name
from .demo import demo
from .embed import embed
from .eval import eval_group
from .experiment import experiment
from .export import export
from .harvest import harvest
from .map import map_command
from .pairs import pairs
from .predict import predict
from .pretrain import pretrain
from .sample import sample
from .simulate import simulate

_state = {"verbose": False}


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = word_params(record.getMessage(), flag_name)
        return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"


def _configure_logging(verbose: bool, quiet: bool) -> None:
    logger = logging.getLogger("urbanvis")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="urbanvis")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging; show tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: bool, quiet: bool) -> None:
    """Street-view imagery to urban representations, predictions and maps.

    \b
    The pipeline, one command per stage, all writing into one study folder:
      urbanvis sample    points every 15 m along the road network   -> points layer
      urbanvis harvest   street-level images for the points         -> captures layer
      urbanvis pairs     self, temporal or spatial contrastive pairs -> pairs/*.parquet
      urbanvis pretrain  MoCo v3 ViT pretraining on the pairs        -> checkpoints/
      urbanvis embed     ViT [CLS] vectors of every capture + PCA    -> embeddings layer
      urbanvis export    embeddings as GeoParquet for other tools    -> exports/*.parquet
      urbanvis predict   zone indicators from mean embeddings (LASSO) -> predictions_<level>
      urbanvis map       folium web map or GeoTIFF of any layer     -> reports/*.html, *.tif
      urbanvis simulate  the synthetic city: contact sheet, ground truth
    \b
    Start with the offline demo:
      urbanvis demo --out demo-study
    \b
    Every command takes --study DIR (default: the current folder) and --help.
    """
    _state["verbose"] = verbose
    _configure_logging(verbose, quiet)


cli.add_command(sample)
cli.add_command(harvest)
cli.add_command(pairs)
cli.add_command(pretrain)
cli.add_command(embed)
cli.add_command(export)
cli.add_command(predict)
cli.add_command(simulate)
cli.add_command(map_command, "map")
cli.add_command(demo)
cli.add_command(eval_group, "eval")
cli.add_command(experiment)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; an UrbanvisError becomes one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="urbanvis", standalone_mode=False)
    except UrbanvisError as exc:
        if _state["verbose"]:
            click.echo(redact(traceback.format_exc()), err=True)
        click.echo(f"error: {one_line(redact(exc.worded(flag_name)))}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # click's name for Ctrl-C
        click.echo("interrupted; finished work is kept, rerun to resume", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # wrong type, bad choice, missing option, unknown command
        path = exc.ctx.command_path if exc.ctx is not None else "urbanvis"
        text = one_line(exc.format_message()).rstrip(".")
        click.echo(f"error: {text}; see '{path} --help'", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; finished work is kept, rerun to resume", err=True)
        sys.exit(130)
    except Exception:  # a bug: show the traceback, without any secret in it
        click.echo(redact(traceback.format_exc()), err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
