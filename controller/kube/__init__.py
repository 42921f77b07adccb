"""The Kubernetes client: the only room that speaks the API server's HTTP.

- ``connection`` finds the cluster (kubeconfig or in-cluster) and its credentials;
- ``rest`` is the small async REST client every other room uses (and ``KubeApiError``);
- ``api`` is the typed verbs the controller needs (status patches, finalizers, Secrets,
  Events), on top of ``rest``;
- ``leader`` is lease-based leader election.

Nothing here knows about Blockflow's rules; everything above may import it.
"""
