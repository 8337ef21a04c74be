from tpserve.cli import main

main()
