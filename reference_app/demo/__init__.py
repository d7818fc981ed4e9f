"""``commercekit demo``: the whole reference app in one process, on embedded backends.

`create_app` (in `reference_app.demo.main`) wires every service on one
`reference_app.common.infra.embedded` `Infra`, behind `InProcessGateway`
(nginx's identity work, in-process); `run_demo` (in `reference_app.demo.run`)
serves it with uvicorn and plays the guided walk (`reference_app.demo.walk`).
"""
