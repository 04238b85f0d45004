"""The endpoint's instance count, set through its registered scalable target.

Application Auto Scaling owns a registered variant's desired instance count: calling SageMaker's
`UpdateEndpointWeightsAndCapacities` behind its back would be undone by it. So the scheduler
narrows the target's range instead: `RegisterScalableTarget` with `MinCapacity = MaxCapacity = n`.
The API reference: "If the specified resource is not active in the target service, this operation
does not change the resource's current capacity. Otherwise, it changes the resource's current
capacity to a value that is inside of this range." An asynchronous endpoint's range may start at
0 (SageMaker Developer Guide, "Autoscale an asynchronous endpoint"), so this both scales to zero
and starts from it, without the step policy and CloudWatch alarm that target tracking needs to
leave zero. Not verified on a real account (this project has none): see README, "How the
scheduler decides".
"""

from __future__ import annotations

from stratus_core.adapters import aws

VARIANT = "AllTraffic"


class ScalableTargetCapacity:
    def __init__(self, endpoint_name: str, variant: str = VARIANT) -> None:
        self._resource = f"endpoint/{endpoint_name}/variant/{variant}"

    def set(self, instances: int) -> None:
        aws.application_autoscaling().register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=self._resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=instances,
            MaxCapacity=instances,
        )
