from codemonkeys.cli import app

app(prog_name="codemonkeys")
