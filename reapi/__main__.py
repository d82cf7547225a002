from reapi.cli import main

main()
