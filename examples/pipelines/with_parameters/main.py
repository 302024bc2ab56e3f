import os

name = os.environ["NAME"]
count = int(os.environ["COUNT"])
for i in range(1, count + 1):
    print(f"{i}/{count}: hello, {name}")
