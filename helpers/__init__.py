"""Shared helpers for the Async Batch Workbook notebooks.

| module         | idea                                                        |
| -------------- | ----------------------------------------------------------- |
| backend        | which model the notebooks talk to (mock by default), chains |
| mock_server    | the OpenAI-compatible mock model: every effect the notebooks show |
| mock_control   | start/stop/configure the mock in its own process            |
| runners        | batch runners: tracked, merged streaming, JSONL with resume |
| metrics        | percentiles, Little's law, in-flight counts                 |
| timing         | a callback that times each model call                       |
| plots          | the notebooks' figures                                      |
| seed           | the seed tutorial's code, bugs included, for comparison     |
"""
