"""An independent Azure Blob client for the tests (the Azure SDK for Python).

Usage: python blob_client.py COMMAND ARGS...  (AZURE_STORAGE_CONNECTION_STRING
in the environment)
  create CONTAINER                    create a container
  upload CONTAINER BLOB FILE          upload a file as a block blob
  list CONTAINER                      committed blobs: one "name<TAB>size" a line
  uncommitted CONTAINER               blobs with uncommitted blocks only: a name a line
  download CONTAINER BLOB FILE        download a blob to a file
"""
import os
import sys

from azure.storage.blob import BlobServiceClient


def main(argv):
    service = BlobServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    )
    command, container = argv[0], argv[1]
    client = service.get_container_client(container)
    if command == "create":
        client.create_container()
    elif command == "upload":
        with open(argv[3], "rb") as f:
            client.upload_blob(argv[2], f, overwrite=False)
    elif command == "list":
        for blob in client.list_blobs():
            print(f"{blob.name}\t{blob.size}")
    elif command == "uncommitted":
        committed = {b.name for b in client.list_blobs()}
        for blob in client.list_blobs(include=["uncommittedblobs"]):
            if blob.name not in committed:
                print(blob.name)
    elif command == "download":
        with open(argv[3], "wb") as f:
            f.write(client.download_blob(argv[2]).readall())
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
