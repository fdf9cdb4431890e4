"""The Function App: wiring only. Each capability is a Blueprint in shared/ registered here."""

import azure.durable_functions as df

app = df.DFApp()
