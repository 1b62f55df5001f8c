from vocadapt.cli import main

main()
