from iatrun.cli import main

main()
