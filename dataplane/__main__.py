from dataplane.cli import main

main()
