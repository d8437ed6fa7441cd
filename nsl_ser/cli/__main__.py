"""python -m nsl_ser.cli <command> ..."""
from nsl_ser.cli import main

main()
