import sys

print("starting work...")
print("something went wrong: the input file is empty", file=sys.stderr)
sys.exit(1)
