"""Deploy adapters (a deployer and a traffic router per platform: Kubernetes, local): the
canary deploy and promotion steps land here."""
