from compatsolve.cli import run

run()
