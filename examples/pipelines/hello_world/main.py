import os

greeting = os.environ.get("GREETING", "Hello")
print(f"{greeting} from Fast-Flow!")
