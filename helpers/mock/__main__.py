from helpers.mock.server import main

main()
