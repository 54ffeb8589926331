"""The review console: people work the tickets the model hands over (queue, ticket, bulk, lead's view).

`app` is the web app (FastAPI, Jinja2 pages, JSON API), `store` its SQL, `users` accounts and tokens.
`triage console` serves it; `triage up` starts it with the stack.
"""
