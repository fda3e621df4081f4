"""Reading what a run recorded: Result and its files, metrics, plots, sweep results. Pure
functions of frames: never imports the client, the server or aiohttp."""
